//! A test double of Loki's push API (being written).
