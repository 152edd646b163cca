"""gate: budgets x evidence -> verdicts. Budgets, the evidence chain, the latency decision,
the baseline comparison and the report schema."""
