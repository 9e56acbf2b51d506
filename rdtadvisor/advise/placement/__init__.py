"""Placement advice: which VM should move to which host, from cache and bandwidth headroom.

fleet (the problem as plain data) -> solve (MILP / heuristic, lower bound) -> recommend
(migrations with reasons, priorities, predicted figures and ``xl migrate`` commands).
"""
