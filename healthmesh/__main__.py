"""``python -m healthmesh`` runs the command line."""

from healthmesh.cli import main

main()
