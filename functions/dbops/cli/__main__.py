from dbops.cli import run

run()
