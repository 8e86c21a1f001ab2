"""`python -m assembler`."""

from .cli import command

command()
