"""The local stack: a throwaway PostgreSQL server and a moto server standing in for AWS."""
