"""`python -m bluegreen ...`: the same as the `bluegreen` command."""

from bluegreen.cli import main

if __name__ == "__main__":
    main()
