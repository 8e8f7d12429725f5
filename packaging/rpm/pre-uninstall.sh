# twofold %preun: on erase ($1 = 0) stop and disable the service; an upgrade ($1 = 1) leaves it running.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now twofoldd.service >/dev/null 2>&1 || :
fi
exit 0
