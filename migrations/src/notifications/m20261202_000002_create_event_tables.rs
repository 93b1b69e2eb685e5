crate::event_tables_migration!();
