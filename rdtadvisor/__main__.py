"""`python -m rdtadvisor` runs the CLI."""

from rdtadvisor.cli import main

main()
