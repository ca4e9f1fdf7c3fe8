"""`python -m zhixing.cli ...` (and `torchrun -m zhixing.cli ...`): the `zhixing` command."""

from zhixing.cli import main

main()
