# twofold %pre: the account first, so that rpm can give /etc/twofold/twofold.toml its group.
# rpm passes $1 = 1 on install, 2 on upgrade.
if command -v systemd-sysusers >/dev/null 2>&1; then
    printf '%s\n' 'u twofold - "Twofold two-factor authentication" /var/lib/twofold /usr/sbin/nologin' |
        systemd-sysusers --replace=/usr/lib/sysusers.d/twofold.conf -
elif ! getent passwd twofold >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/twofold --no-create-home \
        --shell /usr/sbin/nologin --comment "Twofold two-factor authentication" twofold
fi
exit 0
