"""What "correct" means, executable. Imports neither vrref nor checker."""
