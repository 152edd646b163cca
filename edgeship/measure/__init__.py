"""measure: run artifacts (in-process, on devices) and record latency, memory and fidelity:
profile, rounds, sessions, eval, compare, and their statistics."""
