"""What the tests share besides fixtures: console scripts run as a user runs them (``console``), synthetic IDX
data (``idx``), tiny training configs (``configs``) and a throw-away PostgreSQL server (``postgres``)."""
