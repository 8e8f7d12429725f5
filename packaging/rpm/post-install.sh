# twofold %post: folders with tight modes; on a first install, enable the unit as the preset policy
# says (Fedora and RHEL do not start services from packages). rpm passes $1 = 1 on install, 2 on upgrade.
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create twofold.conf || :
else
    install -d -m 0700 -o twofold -g twofold /var/lib/twofold
    install -d -m 0750 -o root -g twofold /etc/twofold
fi
# The master key, apart from the data: the unit loads /etc/credstore/twofold.master-key as the
# credential master-key. Only when no key exists anywhere (see the .deb's postinst).
if [ ! -e /etc/credstore/twofold.master-key ] && [ ! -e /etc/credstore.encrypted/twofold.master-key ] \
    && [ ! -e /var/lib/twofold/master.key ]; then
    install -d -m 0700 -o root -g root /etc/credstore
    (umask 077 && head -c 32 /dev/urandom > /etc/credstore/twofold.master-key.new) \
        && mv /etc/credstore/twofold.master-key.new /etc/credstore/twofold.master-key || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl --no-reload preset twofoldd.service >/dev/null 2>&1 || :
    fi
fi
exit 0
