# twofold %postun: after an upgrade ($1 >= 1) restart the service on the new files. On erase
# ($1 = 0) the data in /var/lib/twofold stays: rpm has no purge, remove it by hand if wanted.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart twofoldd.service >/dev/null 2>&1 || :
    fi
fi
exit 0
