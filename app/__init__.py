"""The commands: each turns its typed options into a session (app/session.py) and runs it; puppet.py is
the command line in front of them."""
