"""Local tooling, none of it shipped to Lambda, in four kinds; each imports only the kinds below it
(pyproject.toml's import-linter contracts, tests/unit/test_layers.py):

- `deploy`: packaging (make package) and LocalStack; it may use the tools, the reports and the engine;
- `tools`: the operator and demo tools (demo, soak, migrate, operate, invariants, the saga page's request);
- `reports`: the dashboards, cost and diagrams; they and the tools never import each other;
- `engine`: the local engine and its servers, which import none of the other three.
"""
