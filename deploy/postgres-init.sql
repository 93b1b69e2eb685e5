-- One database per module service (docs/migration-walkthrough.md, step 6).
CREATE DATABASE cleave_users;
CREATE DATABASE cleave_catalog;
CREATE DATABASE cleave_orders;
CREATE DATABASE cleave_payments;
CREATE DATABASE cleave_notifications;
