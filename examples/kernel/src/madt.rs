//! The interrupt topology from ACPI's MADT (through the `acpi` crate): the
//! local APIC address, every enabled CPU's APIC id, the IOAPIC, and the ISA
//! interrupt overrides. Memory is identity-mapped, so "mapping" a table is
//! taking its address.

use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use alloc::vec::Vec;

/// Maps ACPI tables by identity (the whole low 4 GiB is mapped).
#[derive(Clone, Copy, Debug)]
struct IdentityMap;

impl AcpiHandler for IdentityMap {
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        let va = NonNull::new(pa as *mut T).expect("ACPI table at physical address 0");
        // SAFETY: physical == virtual below 4 GiB, where firmware puts the
        // tables; the mapping is exactly the requested region.
        unsafe { PhysicalMapping::new(pa, va, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// What the kernel needs from the MADT.
#[derive(Debug)]
pub(crate) struct Topology {
    /// The local APIC MMIO base.
    pub(crate) lapic_base: u64,
    /// Enabled CPUs' local APIC ids, in MADT order (the firmware lists the
    /// boot CPU first; `main` checks).
    pub(crate) apic_ids: Vec<u32>,
    /// The IOAPIC: (id, MMIO base, first GSI).
    pub(crate) ioapic: (u8, u64, u32),
    /// ISA overrides: (ISA IRQ, GSI, MPS flags).
    pub(crate) overrides: Vec<(u8, u32, u16)>,
}

impl Topology {
    /// The GSI an ISA-numbered line (a PCI "interrupt line" register on the
    /// `pc` machine) arrives on, and whether an override changed it.
    pub(crate) fn gsi_for_isa_irq(&self, irq: u8) -> u32 {
        self.overrides
            .iter()
            .find(|o| o.0 == irq)
            .map_or(u32::from(irq), |o| o.1)
    }
}

/// Reads the MADT, from the RSDP the loader gave or found by the BIOS search.
pub(crate) fn read(rsdp: Option<u64>) -> Result<Topology, &'static str> {
    // SAFETY: the RSDP address comes from the PVH loader (or the BIOS search
    // the crate does in the identity-mapped EBDA/ROM area); the crate
    // validates signatures and checksums before using any table.
    let tables = unsafe {
        match rsdp {
            Some(pa) => AcpiTables::from_rsdp(IdentityMap, pa as usize),
            None => AcpiTables::search_for_rsdp_bios(IdentityMap),
        }
    }
    .map_err(|_| "no valid ACPI RSDP/RSDT")?;
    let madt = tables.find_table::<Madt>().map_err(|_| "no valid MADT")?;
    let madt = madt.get();
    let mut topo = Topology {
        lapic_base: u64::from(madt.local_apic_address),
        apic_ids: Vec::new(),
        ioapic: (0, 0, 0),
        overrides: Vec::new(),
    };
    let mut ioapics = 0;
    for e in madt.entries() {
        match e {
            MadtEntry::LocalApic(l) if l.flags & 1 != 0 => topo.apic_ids.push(u32::from(l.apic_id)),
            MadtEntry::IoApic(io) => {
                ioapics += 1;
                if ioapics == 1 {
                    topo.ioapic = (
                        io.io_apic_id,
                        u64::from(io.io_apic_address),
                        io.global_system_interrupt_base,
                    );
                }
            }
            MadtEntry::InterruptSourceOverride(o) => {
                topo.overrides
                    .push((o.irq, o.global_system_interrupt, o.flags));
            }
            MadtEntry::LocalApicAddressOverride(o) => topo.lapic_base = o.local_apic_address,
            _ => {}
        }
    }
    if ioapics == 0 {
        return Err("the MADT lists no IOAPIC");
    }
    if topo.apic_ids.is_empty() {
        return Err("the MADT lists no enabled CPU");
    }
    Ok(topo)
}
