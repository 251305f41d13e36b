"""Exercises for students: skeletons to fill in, a checker that diagnoses mistakes, grading.

Each practical (:mod:`attnlab.exercises.registry`) is a skeleton file (``templates/``), a
reference solution (``solutions/``) and its checks and catalogue of mistakes
(``practicals/``); :mod:`attnlab.exercises.core` holds the data model. A student's file is
only ever imported in a child process (:mod:`attnlab.exercises.child`), with a time limit.
"""
