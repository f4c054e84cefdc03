"""The offline commands of `python -m service` (cli.commands): making a version's reference and scoring a whole
data file, on the engine and the scoring of /score itself, so that their numbers agree with the service's."""
