//! The commands' standard output. `println!` panics when the reader has gone (`demo | head -1`);
//! these write the same text and, on a closed pipe, end the process quietly with 0, as `grep`
//! and `ripgrep` do: the reader took what it wanted.

use std::fmt;
use std::io::{self, Write};

/// Writes `args` to stdout; a closed pipe ends the process (exit 0), any other failure to write
/// ends it with 1 and says why on stderr.
pub fn write(args: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(error) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if error.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {error}");
        std::process::exit(1);
    }
}

/// `print!` for commands: see [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::commands::output::write(format_args!($($arg)*))
    };
}

/// `println!` for commands: see [`write`].
macro_rules! outln {
    () => {
        $crate::commands::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::commands::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};
