"""Configuration models shared by infra and the functions: pure pydantic, no psycopg, no boto3."""
