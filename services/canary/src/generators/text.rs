//! The plain-text artifacts: credentials, `.env`, git config, SSH key, SQL dump.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::{ALNUM, HEX, derive, derived_time, epoch, filler, hex};

/// One AWS key pair of `seed` (CANARY.md §13): `AKIA` + the first 8 bytes of SHA-256(seed) in
/// upper-case hex; the secret is the first 40 characters of base64(SHA-256(`secret:` + seed)).
pub(super) fn aws_key_pair(seed: &str) -> (String, String) {
    let id = format!(
        "AKIA{}",
        hex(&Sha256::digest(seed.as_bytes())[..8]).to_ascii_uppercase()
    );
    let mut secret = STANDARD.encode(Sha256::digest(format!("secret:{seed}").as_bytes()));
    secret.truncate(40);
    (id, secret)
}

pub(super) fn aws_creds(slug: &str) -> String {
    let mut out = String::new();
    for (profile, seed, region) in [
        ("default", slug.to_owned(), "us-east-1"),
        ("prod", format!("prod-{slug}"), "us-west-2"),
    ] {
        let (id, secret) = aws_key_pair(&seed);
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "[{profile}]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\nregion = {region}"
        );
    }
    out
}

/// A private address in 10.20.0.0/16 drawn from the slug.
fn internal_ip(slug: &str, label: &str) -> String {
    let d = derive(slug, label);
    format!("10.20.{}.{}", d[0] % 32, 10 + d[1] % 200)
}

pub(super) fn env_file(slug: &str, beacon: &str) -> String {
    let db_password = filler(slug, "env-db-password", ALNUM, 20);
    let redis_password = filler(slug, "env-redis-password", ALNUM, 24);
    let redis_host = internal_ip(slug, "env-redis-host");
    let jwt = filler(slug, "env-jwt-secret", HEX, 64);
    format!(
        "# production settings - keep out of version control\n\
         ENVIRONMENT=production\n\
         LOG_LEVEL=info\n\
         \n\
         API_BASE_URL={beacon}\n\
         WEBHOOK_NOTIFY_URL={beacon}/webhook\n\
         \n\
         DB_PASSWORD={db_password}\n\
         REDIS_URL=redis://:{redis_password}@{redis_host}:6379/0\n\
         JWT_SECRET={jwt}\n"
    )
}

pub(super) fn git_config(beacon: &str) -> String {
    format!(
        "[core]\n\
         \trepositoryformatversion = 0\n\
         \tfilemode = true\n\
         \tbare = false\n\
         \tlogallrefupdates = true\n\
         [remote \"origin\"]\n\
         \turl = {beacon}/repo.git\n\
         \tfetch = +refs/heads/*:refs/remotes/origin/*\n\
         [branch \"main\"]\n\
         \tremote = origin\n\
         \tmerge = refs/heads/main\n"
    )
}

/// The fake key: 768 bytes of SHA-256(slug) repeated, base64 in 70-character lines between the
/// OpenSSH markers. The comment (`deploy@<host>`) would sit inside the encoded key of a real
/// file, where nobody reads it; here it is the line after the END marker, which OpenSSH's
/// parser ignores and anyone reading the file sees.
pub(super) fn ssh_key(slug: &str, host: &str) -> String {
    let digest = Sha256::digest(slug.as_bytes());
    let body: Vec<u8> = digest.iter().copied().cycle().take(768).collect();
    let encoded = STANDARD.encode(body);
    let mut out = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for line in encoded.as_bytes().chunks(70) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    let _ = writeln!(out, "-----END OPENSSH PRIVATE KEY-----\ndeploy@{host}");
    out
}

const BCRYPT: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

const USERS: [(&str, &str, &str); 7] = [
    ("admin", "it-admin", "admin"),
    ("jmartin", "j.martin", "admin"),
    ("skhan", "s.khan", "user"),
    ("lchen", "l.chen", "user"),
    ("mrossi", "m.rossi", "billing"),
    ("svc_reporting", "reporting", "service"),
    ("svc_backup", "backup-ops", "service"),
];

const API_KEYS: [(usize, &str, &str); 4] = [
    (1, "terraform-prod", "admin"),
    (2, "ci-deploy", "deploy"),
    (5, "billing-export", "read:billing"),
    (6, "grafana-datasource", "read:metrics"),
];

pub(super) fn mysql_dump(slug: &str, zone: &str) -> String {
    let server_host = internal_ip(slug, "sql-server-host");
    let completed = derived_time(slug, "sql-completed", epoch(), 20);
    let mut out = format!(
        "-- MySQL dump 10.13  Distrib 8.0.39, for Linux (x86_64)\n\
         --\n\
         -- Host: {server_host}    Database: app_prod\n\
         -- ------------------------------------------------------\n\
         -- Server version\t8.0.39-0ubuntu0.22.04.1\n\
         \n\
         /*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n\
         /*!40101 SET @OLD_CHARACTER_SET_RESULTS=@@CHARACTER_SET_RESULTS */;\n\
         /*!40101 SET @OLD_COLLATION_CONNECTION=@@COLLATION_CONNECTION */;\n\
         /*!50503 SET NAMES utf8mb4 */;\n\
         /*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;\n\
         /*!40103 SET TIME_ZONE='+00:00' */;\n\
         /*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;\n\
         /*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n\
         /*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n\
         /*!40111 SET @OLD_SQL_NOTES=@@SQL_NOTES, SQL_NOTES=0 */;\n\
         \n\
         --\n\
         -- Table structure for table `users`\n\
         --\n\
         \n\
         DROP TABLE IF EXISTS `users`;\n\
         /*!40101 SET @saved_cs_client     = @@character_set_client */;\n\
         /*!50503 SET character_set_client = utf8mb4 */;\n\
         CREATE TABLE `users` (\n  \
           `id` int unsigned NOT NULL AUTO_INCREMENT,\n  \
           `username` varchar(64) NOT NULL,\n  \
           `email` varchar(255) NOT NULL,\n  \
           `password_hash` varchar(255) NOT NULL,\n  \
           `role` varchar(32) NOT NULL DEFAULT 'user',\n  \
           `created_at` datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,\n  \
           PRIMARY KEY (`id`),\n  \
           UNIQUE KEY `uniq_username` (`username`),\n  \
           UNIQUE KEY `uniq_email` (`email`)\n\
         ) ENGINE=InnoDB AUTO_INCREMENT={next_user} DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci;\n\
         /*!40101 SET character_set_client = @saved_cs_client */;\n\
         \n\
         --\n\
         -- Dumping data for table `users`\n\
         --\n\
         \n\
         LOCK TABLES `users` WRITE;\n\
         /*!40000 ALTER TABLE `users` DISABLE KEYS */;\n\
         INSERT INTO `users` VALUES ",
        next_user = USERS.len() + 1,
    );
    for (i, (user, mail, role)) in USERS.iter().enumerate() {
        let id = i + 1;
        let hash = filler(slug, &format!("sql-user-hash-{id}"), BCRYPT, 53);
        let created = derived_time(slug, &format!("sql-user-created-{id}"), epoch(), 900);
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            out,
            "{sep}({id},'{user}','{mail}@northwind-corp.com','$2b$12${hash}','{role}','{}')",
            created.format("%Y-%m-%d %H:%M:%S")
        );
    }
    let _ = write!(
        out,
        ";\n\
         /*!40000 ALTER TABLE `users` ENABLE KEYS */;\n\
         UNLOCK TABLES;\n\
         \n\
         --\n\
         -- Table structure for table `api_keys`\n\
         --\n\
         \n\
         DROP TABLE IF EXISTS `api_keys`;\n\
         /*!40101 SET @saved_cs_client     = @@character_set_client */;\n\
         /*!50503 SET character_set_client = utf8mb4 */;\n\
         CREATE TABLE `api_keys` (\n  \
           `id` int unsigned NOT NULL AUTO_INCREMENT,\n  \
           `user_id` int unsigned NOT NULL,\n  \
           `name` varchar(64) NOT NULL,\n  \
           `key_prefix` char(12) NOT NULL,\n  \
           `key_hash` char(64) NOT NULL,\n  \
           `scopes` varchar(255) NOT NULL,\n  \
           `created_at` datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,\n  \
           PRIMARY KEY (`id`),\n  \
           UNIQUE KEY `uniq_key_hash` (`key_hash`),\n  \
           KEY `idx_user` (`user_id`)\n\
         ) ENGINE=InnoDB AUTO_INCREMENT={next_key} DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci;\n\
         /*!40101 SET character_set_client = @saved_cs_client */;\n\
         \n\
         --\n\
         -- Dumping data for table `api_keys`\n\
         --\n\
         \n\
         LOCK TABLES `api_keys` WRITE;\n\
         /*!40000 ALTER TABLE `api_keys` DISABLE KEYS */;\n\
         INSERT INTO `api_keys` VALUES ",
        next_key = API_KEYS.len() + 1,
    );
    for (i, (user_id, name, scopes)) in API_KEYS.iter().enumerate() {
        let id = i + 1;
        let prefix = filler(slug, &format!("sql-key-prefix-{id}"), ALNUM, 8);
        let hash = filler(slug, &format!("sql-key-hash-{id}"), HEX, 64);
        let created = derived_time(slug, &format!("sql-key-created-{id}"), epoch(), 400);
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            out,
            "{sep}({id},{user_id},'{name}','nwk_{prefix}','{hash}','{scopes}','{}')",
            created.format("%Y-%m-%d %H:%M:%S")
        );
    }
    let repl_password = filler(slug, "sql-repl-password", ALNUM, 18);
    let change = format!(
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='{slug}.{zone}', SOURCE_PORT=3306, \
         SOURCE_USER='repl', SOURCE_PASSWORD='{repl_password}', SOURCE_CONNECT_RETRY=30, \
         GET_SOURCE_PUBLIC_KEY=1"
    );
    out.push_str(
        ";\n\
         /*!40000 ALTER TABLE `api_keys` ENABLE KEYS */;\n\
         UNLOCK TABLES;\n\
         \n",
    );
    for statement in [change.as_str(), "START REPLICA"] {
        let _ = writeln!(
            out,
            "SET @q = CONVERT(FROM_BASE64('{}') USING utf8mb4);\n\
             PREPARE s FROM @q;\n\
             EXECUTE s;\n\
             DEALLOCATE PREPARE s;",
            STANDARD.encode(statement)
        );
    }
    let _ = writeln!(
        out,
        "/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;\n\
         \n\
         /*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n\
         /*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;\n\
         /*!40014 SET UNIQUE_CHECKS=@OLD_UNIQUE_CHECKS */;\n\
         /*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;\n\
         /*!40101 SET CHARACTER_SET_RESULTS=@OLD_CHARACTER_SET_RESULTS */;\n\
         /*!40101 SET COLLATION_CONNECTION=@OLD_COLLATION_CONNECTION */;\n\
         /*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;\n\
         \n\
         -- Dump completed on {}",
        completed.format("%Y-%m-%d %H:%M:%S")
    );
    out
}
