"""scripts/demo, the README's main command, and the vessel.cmd= mechanism it relies on."""
import os
import subprocess

from guestconsole import INIT_FIRST_LINE, GuestConsole


def test_demo_with_qemu_runs_the_command_and_powers_off(top):
    # VESSEL_DEMO_VMM=qemu: the same guest and command in the peer VMM (no build needed).
    env = dict(os.environ, VESSEL_DEMO_VMM="qemu", VESSEL_DEMO_CMD="uname -a; echo demo-$((6*7))")
    r = subprocess.run(["bash", str(top / "scripts/demo")], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "Linux vessel" in r.stdout and "riscv64 GNU/Linux" in r.stdout
    assert "demo-42" in r.stdout
    assert r.stdout.rstrip().splitlines()[-1].startswith(
        "demo: the guest ran the command and powered off after")


def test_demo_rejects_bad_settings(top):
    env = dict(os.environ, VESSEL_DEMO_VMM="bochs")
    r = subprocess.run(["bash", str(top / "scripts/demo")], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    assert r.returncode != 0 and "VESSEL_DEMO_VMM" in r.stdout


def test_default_guest_runs_a_command_in_vessel_vmm(build_dir, guest_assets, tmp_path):
    """The guest part of scripts/demo, in vessel-vmm: /init runs vessel.cmd and powers off."""
    vmm = build_dir / "vessel-vmm"
    append = 'console=ttyS0 quiet vessel.cmd="uname -a; cat /proc/cpuinfo"'
    cmd = [vmm, "--kernel", guest_assets / "Image", "--initrd", guest_assets / "initrd.img",
           "--append", append]
    with GuestConsole(cmd, log_path=tmp_path / "console.log") as vm:
        vm.expect(INIT_FIRST_LINE)
        vm.expect("riscv64 GNU/Linux")
        vm.expect("isa\t\t: rv64ima")
        vm.expect("vessel-init: command exited with status 0")
        assert vm.wait(600) == 0
