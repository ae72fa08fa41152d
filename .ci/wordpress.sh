#!/usr/bin/env bash
# A real WordPress for the tests (DESIGN §7): Debian's `wordpress` package, MariaDB and `php -S`,
# all on 127.0.0.1, with an application password for the admin user.
#
# Idempotent and cached: packages are installed only when missing (the cache), the state directory
# (MariaDB data, config, secrets, logs, pid files) is reused across runs, and servers still alive
# from an earlier run are reused. A warm re-run takes well under a second.
#
# Result: $ONEIE_WP_STATE/env (mode 0600), one KEY=value per line, values never need quoting:
#     WORDPRESS_URL=http://127.0.0.1:18080
#     WORDPRESS_USERNAME=admin
#     WORDPRESS_APP_PASSWORD=<24 letters and digits>   (WordPress ignores the spaces it displays)
# It can be `source`d by a shell or split on the first "=" by anything else.
#
# Settings (environment):
#     ONEIE_WP_STATE     state directory                    (/var/tmp/oneie-wordpress)
#     ONEIE_WP_PORT      php -S port on 127.0.0.1           (18080)
#     ONEIE_WP_DB_PORT   MariaDB TCP port on 127.0.0.1      (13306; WordPress itself uses the socket)
#     ONEIE_WP_WORKERS   php -S worker processes            (4)
#     ONEIE_WP_TIMEOUT   seconds to wait for each server    (60)
#     ONEIE_WP_APT_LOCK_TIMEOUT  seconds to wait for another apt/dpkg  (600)
#
# Stop the servers with .ci/stop-wordpress.sh. Start from scratch: stop, then delete the state dir.
set -Eeuo pipefail
umask 077

STATE=${ONEIE_WP_STATE:-/var/tmp/oneie-wordpress}
PORT=${ONEIE_WP_PORT:-18080}
DB_PORT=${ONEIE_WP_DB_PORT:-13306}
WORKERS=${ONEIE_WP_WORKERS:-4}
TIMEOUT=${ONEIE_WP_TIMEOUT:-60}
APT_LOCK_TIMEOUT=${ONEIE_WP_APT_LOCK_TIMEOUT:-600}

URL="http://127.0.0.1:${PORT}"
WP_ROOT=/usr/share/wordpress
# Debian's wp-config.php loads /etc/wordpress/config-$WORDPRESS_CONFIG.php when the server sets
# $_SERVER['WORDPRESS_CONFIG'] (our router and CLI helper do); that file includes our state's config.
DEBIAN_CONFIG_NAME=oneie-tests
DEBIAN_CONFIG=/etc/wordpress/config-${DEBIAN_CONFIG_NAME}.php
SITE_TITLE="oneie-operator tests"
ADMIN_USER="admin"
ADMIN_EMAIL=admin@example.org
APP_PASSWORD_NAME=oneie-tests
PACKAGES=(wordpress mariadb-server mariadb-client php-cli php-mysql php-curl php-xml php-mbstring php-gd php-intl curl procps)

DB_DIR=$STATE/mariadb
RUN_DIR=$STATE/run
LOG_DIR=$STATE/log
SECRETS=$STATE/secrets
DB_SOCK=$RUN_DIR/mariadb.sock
DB_PID=$RUN_DIR/mariadb.pid
PHP_PID=$RUN_DIR/php-server.pid
ENV_FILE=$STATE/env

T0=$EPOCHREALTIME
declare -a SUMMARY=()

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # log, die, since, apt_ensure

# wait_for COMMAND...: poll COMMAND until it succeeds or $TIMEOUT seconds pass (no blind sleeps).
# COMMAND returns 1 for "not yet" and 2 for "never" (e.g. the server process died): stop early then.
wait_for() {
    local deadline=$((SECONDS + TIMEOUT)) rc
    while :; do
        rc=0
        "$@" || rc=$?
        ((rc != 0)) || return 0
        ((rc != 2)) || return 2
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

random_token() { # $1 characters from [A-Za-z0-9]
    local out=""
    while ((${#out} < $1)); do
        out+=$(head -c 96 /dev/urandom | tr -dc 'A-Za-z0-9')
    done
    printf '%s' "${out:0:$1}"
}

# secret NAME LENGTH: a random secret kept in $SECRETS/NAME (created once, then reused).
secret() {
    local file=$SECRETS/$1
    if [[ ! -s $file ]]; then
        random_token "$2" >"$file.tmp"
        mv -f "$file.tmp" "$file"
    fi
    cat "$file"
}

# write_if_changed FILE MODE: stdin → FILE, only when the content differs (keeps warm runs cheap).
write_if_changed() {
    local file=$1 mode=$2 content
    content=$(cat)
    if [[ ! -f $file ]] || [[ "$(cat "$file")" != "$content" ]]; then
        printf '%s\n' "$content" >"$file.tmp"
        chmod "$mode" "$file.tmp"
        mv -f "$file.tmp" "$file"
    fi
}

cmdline_has() { # cmdline_has PID TEXT: process PID runs (not a zombie) and its command line contains TEXT
    local cmd
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
    [[ $cmd == *"$2"* ]]
}

pid_alive() { # pid_alive PIDFILE TEXT: the pid in PIDFILE runs and its command line contains TEXT
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && cmdline_has "$pid" "$2"
}

# group_members PIDFILE TEXT: pids in the process group led by the pid in PIDFILE (our servers are
# started with setsid, so pid = process group) whose command line contains TEXT. Finds php -S
# workers left behind when only their parent died.
group_members() {
    local pgid pid
    [[ -s $1 ]] || return 0
    pgid=$(<"$1")
    [[ $pgid =~ ^[0-9]+$ ]] || return 0
    for pid in $(pgrep -g "$pgid" 2>/dev/null); do
        if cmdline_has "$pid" "$2"; then echo "$pid"; fi
    done
}

# stop_group PIDFILE TEXT: TERM what group_members finds, wait (deadline), then KILL; remove PIDFILE.
# shellcheck disable=SC2086 # $pids is a list of pids, split on purpose
stop_group() {
    local pids deadline
    pids=$(group_members "$1" "$2")
    if [[ -n $pids ]]; then
        kill -TERM $pids 2>/dev/null || true
        kill -CONT $pids 2>/dev/null || true # a stopped process acts on TERM only once continued
        deadline=$((SECONDS + 10))
        while [[ -n $(group_members "$1" "$2") ]] && ((SECONDS < deadline)); do sleep 0.1; done
        pids=$(group_members "$1" "$2")
        if [[ -n $pids ]]; then
            kill -KILL $pids 2>/dev/null || true
            deadline=$((SECONDS + 5))
            while [[ -n $(group_members "$1" "$2") ]] && ((SECONDS < deadline)); do sleep 0.1; done
        fi
    fi
    rm -f "$1"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[[ $(id -u) == 0 ]] || die "must run as root (installs packages, runs MariaDB as the mysql user)"

# ---------------------------------------------------------------------------------------------
# 1. Packages (the cache): install only what is missing.
# ---------------------------------------------------------------------------------------------
t=$EPOCHREALTIME
# Keeps the packages' own services (apache2 on :80, mariadb on :3306) from starting.
apt_ensure /var/log/oneie-wordpress-apt.log "${PACKAGES[@]}"
if [[ -n $APT_INSTALLED ]]; then
    SUMMARY+=("packages installed in $(since "$t")")
else
    SUMMARY+=("packages cached")
fi
for tool in mariadbd mariadb-install-db mariadb mariadb-admin php curl; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || die "$tool is missing after the package install"
done
[[ -f $WP_ROOT/wp-load.php ]] || die "$WP_ROOT/wp-load.php is missing: is Debian's wordpress package broken?"
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)

# ---------------------------------------------------------------------------------------------
# State directory; one run at a time (the pytest fixture may call us while CI does).
# ---------------------------------------------------------------------------------------------
mkdir -p "$STATE"
chmod 711 "$STATE" # the mysql user must reach its data dir and socket; nothing is listable
exec 9>"$STATE/lock"
flock -w "$TIMEOUT" 9 || die "another wordpress.sh holds $STATE/lock for more than ${TIMEOUT}s"
mkdir -p "$RUN_DIR" "$LOG_DIR" "$SECRETS" "$STATE/wp-content"/{plugins,themes,uploads,upgrade}
chown mysql:mysql "$RUN_DIR"
chmod 755 "$RUN_DIR"
chmod 700 "$SECRETS"

# ---------------------------------------------------------------------------------------------
# 2. MariaDB on 127.0.0.1 (and a socket in the state dir), data in the state dir.
# ---------------------------------------------------------------------------------------------
t=$EPOCHREALTIME
db_ping() { mariadb-admin --no-defaults --socket="$DB_SOCK" --user=root --connect-timeout=2 ping >/dev/null 2>&1; }
if pid_alive "$DB_PID" "$DB_DIR" && db_ping; then
    db_state="reused"
else
    stop_group "$DB_PID" "$DB_DIR" # a hung server from an earlier run, if any
    if port_open "$DB_PORT"; then
        die "127.0.0.1:$DB_PORT is taken by another process (not our MariaDB): free it or set ONEIE_WP_DB_PORT"
    fi
    if [[ ! -f $DB_DIR/.oneie-initialised ]]; then
        rm -rf "$DB_DIR" # a half-done initialisation from an interrupted run
        mkdir -p "$DB_DIR"
        chown mysql:mysql "$DB_DIR"
        chmod 700 "$DB_DIR"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR" --auth-root-authentication-method=socket \
            --skip-test-db >"$LOG_DIR/mariadb-install-db.log" 2>&1 ||
            die "mariadb-install-db failed: see $LOG_DIR/mariadb-install-db.log"
        touch "$DB_DIR/.oneie-initialised"
        rm -f "$STATE/.wp-installed" # a new, empty database
        db_state="initialised+started"
    else
        db_state="started"
    fi
    rm -f "$DB_SOCK" "$DB_PID"
    setsid "$MARIADBD" --no-defaults --user=mysql --datadir="$DB_DIR" --socket="$DB_SOCK" --pid-file="$DB_PID" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve --log-error="$LOG_DIR/mariadb.log" \
        --innodb-buffer-pool-size=64M --max-connections=200 \
        </dev/null >>"$LOG_DIR/mariadb.log" 2>&1 9>&- &
    db_child=$!
    db_up() { db_ping || { kill -0 "$db_child" 2>/dev/null || return 2; return 1; }; }
    if ! wait_for db_up; then
        tail -n 20 "$LOG_DIR/mariadb.log" >&2 || true
        die "MariaDB did not answer on $DB_SOCK within ${TIMEOUT}s (log: $LOG_DIR/mariadb.log)"
    fi
fi
DB_PASSWORD=$(secret db-password 32)
mariadb --no-defaults --socket="$DB_SOCK" --user=root <<SQL || die "could not create the wordpress database and user"
CREATE DATABASE IF NOT EXISTS wordpress CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'wordpress'@'localhost' IDENTIFIED BY '${DB_PASSWORD}';
CREATE USER IF NOT EXISTS 'wordpress'@'127.0.0.1' IDENTIFIED BY '${DB_PASSWORD}';
ALTER USER 'wordpress'@'localhost' IDENTIFIED BY '${DB_PASSWORD}';
ALTER USER 'wordpress'@'127.0.0.1' IDENTIFIED BY '${DB_PASSWORD}';
GRANT ALL PRIVILEGES ON wordpress.* TO 'wordpress'@'localhost';
GRANT ALL PRIVILEGES ON wordpress.* TO 'wordpress'@'127.0.0.1';
SQL
SUMMARY+=("mariadb $db_state in $(since "$t")")

# ---------------------------------------------------------------------------------------------
# 3. WordPress configuration.
# ---------------------------------------------------------------------------------------------
write_if_changed "$DEBIAN_CONFIG" 644 <<'PHP'
<?php
// Written by oneie-operator's .ci/wordpress.sh (the real WordPress the tests use).
// The php -S router and the CLI helper set $_SERVER['ONEIE_WP_CONFIG'] to the state dir's wp-config.
if (empty($_SERVER['ONEIE_WP_CONFIG']) || !is_file($_SERVER['ONEIE_WP_CONFIG'])) {
    header('HTTP/1.0 500 Internal Server Error');
    echo "ONEIE_WP_CONFIG is not set: start this WordPress with .ci/wordpress.sh";
    exit(1);
}
require $_SERVER['ONEIE_WP_CONFIG'];
PHP

salts=""
for key in AUTH_KEY SECURE_AUTH_KEY LOGGED_IN_KEY NONCE_KEY AUTH_SALT SECURE_AUTH_SALT LOGGED_IN_SALT NONCE_SALT; do
    salts+="define('$key', '$(secret "salt-$key" 64)');"$'\n'
done
write_if_changed "$STATE/wp-config.php" 600 <<PHP
<?php
// Generated by .ci/wordpress.sh; rewritten when the settings change. Included through
// ${DEBIAN_CONFIG} by Debian's /usr/share/wordpress/wp-config.php.
define('DB_NAME', 'wordpress');
define('DB_USER', 'wordpress');
define('DB_PASSWORD', '${DB_PASSWORD}');
define('DB_HOST', 'localhost:${DB_SOCK}');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
${salts}
define('WP_HOME', '${URL}');
define('WP_SITEURL', '${URL}');
define('WP_CONTENT_DIR', '${STATE}/wp-content');
// Application passwords need https, or this:
define('WP_ENVIRONMENT_TYPE', 'local');
// No network beyond 127.0.0.1 here: no update checks, no cron loopbacks, no mail.
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('DISABLE_WP_CRON', true);
define('WP_DEBUG', false);
define('FS_METHOD', 'direct');
\$table_prefix = 'wp_';
PHP

write_if_changed "$STATE/router.php" 644 <<PHP
<?php
// php -S router: static files as they are, PHP files as they are, everything else through
// index.php (pretty permalinks, so /wp-json/... works as well as /?rest_route=...).
\$_SERVER['ONEIE_WP_CONFIG'] = '${STATE}/wp-config.php';
\$_SERVER['WORDPRESS_CONFIG'] = '${DEBIAN_CONFIG_NAME}';
\$root = '${WP_ROOT}';
\$path = rawurldecode((string) parse_url(\$_SERVER['REQUEST_URI'], PHP_URL_PATH));
if (\$path !== '/' && strpos(\$path, '..') === false && file_exists(\$root . \$path)) {
    if (is_dir(\$root . \$path) && !is_file(\$root . rtrim(\$path, '/') . '/index.php')) {
        return false;
    }
    if (is_file(\$root . \$path) && substr(\$path, -4) !== '.php') {
        return false; // static file: the built-in server sends it
    }
    \$script = is_dir(\$root . \$path) ? rtrim(\$path, '/') . '/index.php' : \$path;
    \$_SERVER['SCRIPT_NAME'] = \$_SERVER['PHP_SELF'] = \$script;
    \$_SERVER['SCRIPT_FILENAME'] = \$root . \$script;
    chdir(dirname(\$root . \$script));
    require \$root . \$script;
    return;
}
\$_SERVER['SCRIPT_NAME'] = \$_SERVER['PHP_SELF'] = '/index.php';
\$_SERVER['SCRIPT_FILENAME'] = \$root . '/index.php';
chdir(\$root);
require \$root . '/index.php';
PHP

# The CLI helper: loads WordPress in the php CLI to install it and to manage application passwords.
write_if_changed "$STATE/wp-helper.php" 644 <<PHP
<?php
// Usage: php wp-helper.php install TITLE USER EMAIL PASSWORD
//        php wp-helper.php app-password USER NAME     (replaces USER's application passwords named NAME)
\$_SERVER['ONEIE_WP_CONFIG'] = '${STATE}/wp-config.php';
\$_SERVER['WORDPRESS_CONFIG'] = '${DEBIAN_CONFIG_NAME}';
\$_SERVER['HTTP_HOST'] = '127.0.0.1:${PORT}';
\$_SERVER['SERVER_NAME'] = '127.0.0.1';
\$_SERVER['SERVER_PORT'] = '${PORT}';
\$_SERVER['REQUEST_URI'] = '/';
\$_SERVER['REQUEST_METHOD'] = 'GET';
\$command = \$argv[1] ?? '';
if (\$command === 'install') {
    define('WP_INSTALLING', true);
    // No mail server here: skip the "your new site" mail (a pluggable function).
    function wp_new_blog_notification() {}
}
require '${WP_ROOT}/wp-load.php';
if (\$command === 'install') {
    require_once ABSPATH . 'wp-admin/includes/upgrade.php';
    if (is_blog_installed()) {
        echo "already\n";
    } else {
        \$result = wp_install(\$argv[2], \$argv[3], \$argv[4], false, '', wp_slash(\$argv[5]));
        if (is_wp_error(\$result) || empty(\$result['user_id'])) {
            fwrite(STDERR, "wp_install failed\n");
            exit(1);
        }
        echo "installed\n";
    }
    // Pretty permalinks, so /wp-json/... routes (the router sends unknown paths to index.php).
    if (get_option('permalink_structure') !== '/%postname%/') {
        update_option('permalink_structure', '/%postname%/');
        delete_option('rewrite_rules');
    }
    exit(0);
}
if (\$command === 'app-password') {
    \$user = get_user_by('login', \$argv[2]);
    if (!\$user) {
        fwrite(STDERR, "no user {\$argv[2]}\n");
        exit(1);
    }
    foreach (WP_Application_Passwords::get_user_application_passwords(\$user->ID) as \$item) {
        if (\$item['name'] === \$argv[3]) {
            WP_Application_Passwords::delete_application_password(\$user->ID, \$item['uuid']);
        }
    }
    \$created = WP_Application_Passwords::create_new_application_password(\$user->ID, array('name' => \$argv[3]));
    if (is_wp_error(\$created)) {
        fwrite(STDERR, \$created->get_error_code() . ': ' . \$created->get_error_message() . "\n");
        exit(1);
    }
    echo \$created[0], "\n";
    exit(0);
}
fwrite(STDERR, "unknown command\n");
exit(2);
PHP

PHP_OPTS=(-d display_errors=0 -d log_errors=1 -d "error_log=$LOG_DIR/php-errors.log" -d memory_limit=256M)
wp_helper() { php "${PHP_OPTS[@]}" "$STATE/wp-helper.php" "$@"; }

# ---------------------------------------------------------------------------------------------
# 4. Install WordPress (site, admin user) from the PHP CLI: no browser, no wp-cli (not in Debian 12).
#    Done before php -S starts, so no request ever sees a half-installed site.
# ---------------------------------------------------------------------------------------------
t=$EPOCHREALTIME
if [[ -f $STATE/.wp-installed ]]; then
    wp_state="installed earlier"
else
    ADMIN_PASSWORD=$(secret admin-password 24)
    wp_state=$(wp_helper install "$SITE_TITLE" "$ADMIN_USER" "$ADMIN_EMAIL" "$ADMIN_PASSWORD" 2>>"$LOG_DIR/wp-helper.log") ||
        die "installing WordPress failed: see $LOG_DIR/wp-helper.log and $LOG_DIR/php-errors.log"
    touch "$STATE/.wp-installed"
    wp_state="$wp_state in $(since "$t")"
fi
SUMMARY+=("wordpress $wp_state")

# ---------------------------------------------------------------------------------------------
# 5. php -S on 127.0.0.1:$PORT (workers, a router for pretty permalinks), readiness = the REST index.
# ---------------------------------------------------------------------------------------------
t=$EPOCHREALTIME
rest_index_ok() { # the REST index answers JSON listing wp/v2 (no pipe: grep -q would cut curl short)
    local body
    body=$(curl -fsS --max-time 5 "$URL/?rest_route=/&_fields=name,namespaces" 2>/dev/null) || return 1
    [[ $body == *'"namespaces"'*'wp\/v2'* ]]
}
if pid_alive "$PHP_PID" "-S 127.0.0.1:$PORT" && rest_index_ok; then
    php_state="reused"
else
    # Not answering, or its parent died and left workers holding the port: replace it.
    stop_group "$PHP_PID" "-S 127.0.0.1:$PORT"
    if port_open "$PORT"; then
        die "127.0.0.1:$PORT is taken by another process (not our php -S): free it or set ONEIE_WP_PORT"
    fi
    cd "$WP_ROOT"
    PHP_CLI_SERVER_WORKERS=$WORKERS setsid php "${PHP_OPTS[@]}" -S "127.0.0.1:$PORT" -t "$WP_ROOT" "$STATE/router.php" \
        </dev/null >>"$LOG_DIR/php-server.log" 2>&1 9>&- &
    php_child=$!
    echo "$php_child" >"$PHP_PID"
    cd - >/dev/null
    php_up() { rest_index_ok || { kill -0 "$php_child" 2>/dev/null || return 2; return 1; }; }
    if ! wait_for php_up; then
        tail -n 20 "$LOG_DIR/php-server.log" "$LOG_DIR/php-errors.log" >&2 2>/dev/null || true
        die "WordPress did not answer $URL/?rest_route=/ within ${TIMEOUT}s (logs: $LOG_DIR)"
    fi
    php_state="started"
fi
SUMMARY+=("php -S $php_state in $(since "$t")")

# ---------------------------------------------------------------------------------------------
# 6. Application password: reuse the one in the env file when WordPress still accepts it.
# ---------------------------------------------------------------------------------------------
t=$EPOCHREALTIME
app_password_ok() { # $1: the password (given to curl on stdin, not on its command line)
    local code
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --config - \
        "$URL/?rest_route=/wp/v2/users/me&_fields=id" 2>/dev/null <<<"user = \"$ADMIN_USER:$1\"") || return 1
    [[ $code == 200 ]]
}
APP_PASSWORD=""
if [[ -f $ENV_FILE ]]; then
    APP_PASSWORD=$(sed -n 's/^WORDPRESS_APP_PASSWORD=//p' "$ENV_FILE")
fi
if [[ -n $APP_PASSWORD ]] && app_password_ok "$APP_PASSWORD"; then
    app_state="reused"
else
    APP_PASSWORD=$(wp_helper app-password "$ADMIN_USER" "$APP_PASSWORD_NAME" 2>>"$LOG_DIR/wp-helper.log") ||
        die "creating the application password failed: see $LOG_DIR/wp-helper.log"
    [[ $APP_PASSWORD =~ ^[A-Za-z0-9]{24}$ ]] || die "unexpected application password format from WordPress"
    app_password_ok "$APP_PASSWORD" ||
        die "WordPress rejects the application password it just created (GET $URL/?rest_route=/wp/v2/users/me)"
    app_state="created"
fi
write_if_changed "$ENV_FILE" 600 <<ENV
WORDPRESS_URL=${URL}
WORDPRESS_USERNAME=${ADMIN_USER}
WORDPRESS_APP_PASSWORD=${APP_PASSWORD}
ENV
SUMMARY+=("app password $app_state in $(since "$t")")

summary=$(IFS=,; echo "${SUMMARY[*]}")
echo "wordpress.sh: ready at $URL in $(since "$T0") (${summary//,/, }); credentials in $ENV_FILE"
