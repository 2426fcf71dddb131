fn main() -> std::process::ExitCode {
    aegis_cli::main_entry()
}
