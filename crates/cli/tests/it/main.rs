//! End-to-end tests: the real server binary on a loopback port, driven by the real CLI.
//! One test binary (modules below) keeps link time down.

mod alerts;
mod audit;
mod drills;
mod files;
mod fingerprints;
mod flow;
mod gateway;
mod glass_case;
mod glass_case_pg;
mod harness;
mod hostile;
mod newcomer;
mod nodes;
mod people_drills;
mod pg;
mod races;
mod recording;
mod review;
mod siem;
mod ssh;
mod syslog_rx;
mod web;
mod web_passkeys;
mod web_practice;
mod witness;
