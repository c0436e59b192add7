//! The typed payload of every stored subject (EVENTS.md §4). Consumers read these bodies
//! leniently (§1.3: unknown fields pass through, numbers may arrive as strings); the types
//! describe what a conforming producer sends and what our own services publish.

pub mod attacker;
pub mod canary;
pub mod email;
pub mod identity;
pub mod rules;
pub mod smtp;
pub mod ttp;
