"""`python -m zhixing ...` runs the `zhixing` command."""

from zhixing.cli import main

if __name__ == "__main__":
    main()
