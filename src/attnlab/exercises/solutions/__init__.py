"""The reference solutions, one file per practical (see attnlab.exercises.core)."""
