"""The image builder: Dockerfile parsing (dockerfile.py), variable expansion (shell_words.py) and
.dockerignore matching (dockerignore.py); see docs/architecture.md."""
