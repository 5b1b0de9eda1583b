"""The version of fastnn (in its own module so that io can read it without importing the
package's __init__, which imports io)."""
__version__ = "0.1.0"
