"The `fastinterp demo` command trains on the digits and shows stock fastai beside fastinterp"
import io, subprocess, sys
import pytest

from fastinterp.cli import demo

def test_demo_prints_the_comparison(digits_path):
    out = io.StringIO()
    learn = demo(digits_path, epochs=1, out=out)
    text = out.getvalue()
    rows = {l.split('  ')[1].strip(): l for l in text.splitlines() if l.startswith('  ') and l.strip()}
    assert '[1.00, 1.00, 1.00]' in rows['row sums (first 3)']
    assert rows['values in [0, 1]'].split()[-1] == 'True' and rows['values in [0, 1]'].split()[-2] == 'False'
    acc = float(rows['accuracy of decoded'].split()[-1])
    assert 0.5 < acc <= 1 and 'n/a' in rows['accuracy of decoded']
    assert 'activation used: softmax' in text

def test_command_line_rejects_an_unknown_loss():
    r = subprocess.run([sys.executable, '-m', 'fastinterp.cli', 'demo', '--loss', 'nope'], capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice: 'nope'" in r.stderr
