"The `fastinterp` command"
__all__ = ['main']
def main(argv=None): raise SystemExit("not yet")
