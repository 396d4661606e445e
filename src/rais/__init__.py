"""rais: many-to-many failover and load balancing of service addresses."""

__version__ = "0.1.0"
