package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// runCompletion is `etcd-appliance completion bash|zsh`: a script that
// completes the subcommands, and each one's flags as the installed binary
// lists them (`<command> __flags`), so the two never disagree.
func runCompletion(args []string, out io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(out, "Usage: etcd-appliance completion bash|zsh\n\n"+
			"Prints a completion script: source <(etcd-appliance completion bash), or the same with zsh.")
		return 0
	}
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		fmt.Fprintln(os.Stderr, "etcd-appliance completion: name the shell: completion bash or completion zsh")
		return 2
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	script := bashCompletion
	if args[0] == "zsh" {
		script = zshCompletion
	}
	r := strings.NewReplacer("@COMMANDS@", strings.Join(names, " "), "@FLAGS@", flagListArg)
	fmt.Fprint(out, r.Replace(script))
	return 0
}

// bashCompletion: `source <(etcd-appliance completion bash)`, or save it in
// /etc/bash_completion.d/etcd-appliance. etcd's own flags are not
// completed: they are etcd's.
const bashCompletion = `# bash completion for etcd-appliance
_etcd_appliance() {
    local cur=${COMP_WORDS[COMP_CWORD]} words
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur"))
        return 0
    fi
    case ${COMP_WORDS[1]} in
    etcd) return 0 ;;
    completion) words="bash zsh" ;;
    *) [[ $cur == -* ]] || return 0
       words=$("${COMP_WORDS[0]}" "${COMP_WORDS[1]}" @FLAGS@ 2>/dev/null) ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _etcd_appliance etcd-appliance
`

// zshCompletion: `source <(etcd-appliance completion zsh)`, or save it as
// _etcd-appliance in a directory of $fpath.
const zshCompletion = `#compdef etcd-appliance
# zsh completion for etcd-appliance
_etcd-appliance() {
    if (( CURRENT == 2 )); then
        compadd -- @COMMANDS@
        return
    fi
    case $words[2] in
    etcd) _files ;;
    completion) compadd -- bash zsh ;;
    *) if [[ $PREFIX == -* ]]; then
           compadd -- ${(f)"$($words[1] $words[2] @FLAGS@ 2>/dev/null)"}
       else
           _files
       fi ;;
    esac
}
if [[ $funcstack[1] == _etcd-appliance ]]; then
    _etcd-appliance "$@"
else
    compdef _etcd-appliance etcd-appliance
fi
`
