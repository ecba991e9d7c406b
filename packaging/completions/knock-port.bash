# bash completion for knock-port; generated from the command tree by npm run docs:generate.
_knock_port() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} path="" next words i
  for ((i = 1; i < COMP_CWORD; i++)); do
    next="$path${path:+ }${COMP_WORDS[i]}"
    case "$next" in
      "run"|"check"|"rules"|"replay"|"watch"|"sessions"|"revoke"|"health"|"confirm"|"uninstall"|"knock"|"demo"|"hash-key"|"totp"|"totp new"|"totp code") path=$next ;;
    esac
  done
  case "$path:$prev" in
    "run:-c") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "run:--config") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "run:--firewall-type") COMPREPLY=($(compgen -W "nftables iptables vyos" -- "$cur")); return ;;
    "run:--http-port") COMPREPLY=(); return ;;
    "run:--https-port") COMPREPLY=(); return ;;
    "run:--capture") COMPREPLY=($(compgen -W "auto nfqueue nflog" -- "$cur")); return ;;
    "run:--state-dir") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "run:--waf-https-port") COMPREPLY=(); return ;;
    "run:--waf-trusted-ips") COMPREPLY=(); return ;;
    "run:--iptables-variant") COMPREPLY=($(compgen -W "default nft legacy" -- "$cur")); return ;;
    "run:--log-level") COMPREPLY=($(compgen -W "fatal error warn info debug trace silent" -- "$cur")); return ;;
    "run:--log-time") COMPREPLY=($(compgen -W "epoch iso" -- "$cur")); return ;;
    "run:--cert") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "run:--key") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "run:--trial") COMPREPLY=(); return ;;
    "check:-c") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "check:--config") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "check:--firewall-type") COMPREPLY=($(compgen -W "nftables iptables vyos" -- "$cur")); return ;;
    "check:--http-port") COMPREPLY=(); return ;;
    "check:--https-port") COMPREPLY=(); return ;;
    "check:--capture") COMPREPLY=($(compgen -W "auto nfqueue nflog" -- "$cur")); return ;;
    "check:--waf-https-port") COMPREPLY=(); return ;;
    "check:--waf-trusted-ips") COMPREPLY=(); return ;;
    "check:--cert") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "check:--key") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "rules:-c") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "rules:--config") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "rules:--firewall-type") COMPREPLY=($(compgen -W "nftables iptables vyos" -- "$cur")); return ;;
    "rules:--http-port") COMPREPLY=(); return ;;
    "rules:--https-port") COMPREPLY=(); return ;;
    "rules:--capture") COMPREPLY=($(compgen -W "auto nfqueue nflog" -- "$cur")); return ;;
    "rules:--waf-https-port") COMPREPLY=(); return ;;
    "rules:--waf-trusted-ips") COMPREPLY=(); return ;;
    "rules:--iptables-variant") COMPREPLY=($(compgen -W "default nft legacy" -- "$cur")); return ;;
    "replay:-c") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "replay:--config") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "replay:--http-port") COMPREPLY=(); return ;;
    "watch:--iface") COMPREPLY=(); return ;;
    "watch:-c") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "watch:--config") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "watch:--http-port") COMPREPLY=(); return ;;
    "sessions:--socket") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "sessions:-c") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "sessions:--config") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "revoke:--app") COMPREPLY=(); return ;;
    "revoke:--socket") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "revoke:-c") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "revoke:--config") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "health:--socket") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "health:-c") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "health:--config") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "confirm:--socket") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "confirm:-c") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "confirm:--config") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "uninstall:-c") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "uninstall:--config") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "uninstall:--firewall-type") COMPREPLY=($(compgen -W "nftables iptables vyos" -- "$cur")); return ;;
    "uninstall:--http-port") COMPREPLY=(); return ;;
    "uninstall:--https-port") COMPREPLY=(); return ;;
    "uninstall:--capture") COMPREPLY=($(compgen -W "auto nfqueue nflog" -- "$cur")); return ;;
    "uninstall:--waf-https-port") COMPREPLY=(); return ;;
    "uninstall:--waf-trusted-ips") COMPREPLY=(); return ;;
    "uninstall:--iptables-variant") COMPREPLY=($(compgen -W "default nft legacy" -- "$cur")); return ;;
    "uninstall:--from-state") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "knock:--url") COMPREPLY=(); return ;;
    "knock:--host") COMPREPLY=(); return ;;
    "knock:--http-port") COMPREPLY=(); return ;;
    "knock:--https-port") COMPREPLY=(); return ;;
    "knock:--http-path") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "knock:--https-path") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "knock:--app") COMPREPLY=(); return ;;
    "knock:--http-key") COMPREPLY=(); return ;;
    "knock:--https-key") COMPREPLY=(); return ;;
    "knock:--key-file") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "knock:--token") COMPREPLY=(); return ;;
    "knock:--otp-secret") COMPREPLY=(); return ;;
    "knock:--ca") COMPREPLY=($(compgen -f -- "$cur")); return ;;
    "knock:--wait") COMPREPLY=(); return ;;
    "knock:--service-port") COMPREPLY=(); return ;;
    "knock:--connect-timeout") COMPREPLY=(); return ;;
    "knock:--step1-wait") COMPREPLY=(); return ;;
    "knock:--step2-connect-timeout") COMPREPLY=(); return ;;
    "knock:--timeout") COMPREPLY=(); return ;;
    "totp new:--user") COMPREPLY=(); return ;;
    "totp new:--issuer") COMPREPLY=(); return ;;
    "totp code:--secret") COMPREPLY=(); return ;;
  esac
  case "$path" in
    "") words="run check rules replay watch sessions revoke health confirm uninstall knock demo hash-key totp -V --version --help" ;;
    "run") words="-c --config --firewall-type --http-port --https-port --capture --state-dir --waf-https-port --waf-trusted-ips --iptables-variant --log-level --log-time --cert --key --trial --help" ;;
    "check") words="-c --config --firewall-type --http-port --https-port --capture --waf-https-port --waf-trusted-ips --cert --key --json --no-interface-check --help" ;;
    "rules") words="-c --config --firewall-type --http-port --https-port --capture --waf-https-port --waf-trusted-ips --iptables-variant --help" ;;
    "replay") words="--json -c --config --http-port --help" ;;
    "watch") words="--iface --json -c --config --http-port --help" ;;
    "sessions") words="--json --socket -c --config --help" ;;
    "revoke") words="--app --socket -c --config --help" ;;
    "health") words="--json --socket -c --config --help" ;;
    "confirm") words="--socket -c --config --help" ;;
    "uninstall") words="-c --config --firewall-type --http-port --https-port --capture --waf-https-port --waf-trusted-ips --iptables-variant --from-state --help" ;;
    "knock") words="--url --host --http-port --https-port --http-path --https-path --app --http-key --https-key --key-file --token --totp --otp-secret --insecure --ca -4 --ipv4 -6 --ipv6 --wait --service-port --connect-timeout --step1-wait --tcp-fastopen --step2-connect-timeout --timeout -q --quiet --help" ;;
    "demo") words="--keep -q --quiet --help" ;;
    "hash-key") words="--help" ;;
    "totp") words="new code --help" ;;
    "totp new") words="--user --issuer --help" ;;
    "totp code") words="--secret --help" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _knock_port knock-port
