"""The emulated country: network-namespace topologies, fault actions and scenarios."""
