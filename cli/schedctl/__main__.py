"""`python -m schedctl`."""

from schedctl.main import main

main()
