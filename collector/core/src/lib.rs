//! storepulse collector core (sans-IO).
