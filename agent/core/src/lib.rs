//! storepulse agent core (sans-IO).
