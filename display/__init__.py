"""The Flask-SocketIO server: the index, the /demoN pages, and the pushes to browsers."""
