"""`python -m service.cli`: the `t2v` command without the installed script (the tests run it so)."""

from service.cli import main

main()
