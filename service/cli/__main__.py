"""`python -m service.cli`: the same as the `t2v` command."""

from service.cli import main

main()
