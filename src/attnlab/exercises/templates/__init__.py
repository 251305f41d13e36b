"""The skeletons handed to students, one file per practical (see attnlab.exercises.core)."""
