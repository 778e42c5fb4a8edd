//! The simulated fleet.
