"""``python -m linker`` runs the CLI."""

from linker.cli import main

main()
