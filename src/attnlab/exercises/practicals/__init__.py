"""The checks and catalogues of mistakes, one module per practical (see attnlab.exercises.core)."""
