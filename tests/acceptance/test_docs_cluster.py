"""The documented commands of the 'cluster' group (tests/acceptance/recipes.py), run as a user runs
them: as subprocesses in a folder outside the repository, with small settings."""

from recipes import documented_command_tests

ws, test_documented_command = documented_command_tests("cluster")

