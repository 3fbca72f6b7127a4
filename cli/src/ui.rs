//! How the command talks to a person: colour and symbols on a terminal, plain lines when piped.

use std::io::IsTerminal;

pub struct Ui {
    colour: bool,
}

impl Ui {
    pub fn new() -> Self {
        Self {
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn title(&self, text: &str) {
        println!("{}", self.paint("1", text));
    }

    pub fn step(&self, text: &str) {
        println!("{} {text}", self.paint("2", "·"));
    }

    pub fn event(&self, text: &str) {
        println!("{} {text}", self.paint("36", "→"));
    }

    pub fn log_tail(&self, lines: &[String]) {
        for line in lines {
            println!("  {} {}", self.paint("2", "│"), self.paint("2", line));
        }
    }

    pub fn done(&self, text: &str) {
        println!("{} {text}", self.paint("32", "✔"));
    }

    pub fn error(&self, text: &str) {
        eprintln!("{} {text}", self.paint("31", "✘"));
    }
}

impl Default for Ui {
    fn default() -> Self {
        Self::new()
    }
}
