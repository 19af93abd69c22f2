"""The catalog: every fact about uploads, evidence, tokens (and later tickets, jobs, audit) in
one relational database, SQLite for one box and PostgreSQL for many replicas."""
