//! storepulse test support: process harness, raw QUIC clients, oracles.
